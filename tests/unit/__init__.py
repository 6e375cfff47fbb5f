"""The fast unit layer (issue #17): a package, so that its modules (test_backends.py...) do not
clash with the promise tests of the same name one folder up."""
