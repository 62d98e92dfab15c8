"""Types, settings, errors and time: what every other package of Trellis shares."""
