from gal.cli import entry

entry()
