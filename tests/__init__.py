"""Test package: lets test modules share `tests.helpers`."""
