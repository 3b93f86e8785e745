"""System identification (issue 14): record a scripted excitation on a robot or the mock robot."""
