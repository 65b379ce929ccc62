"""Dataset readers and the manifest schema every training tool shares."""
