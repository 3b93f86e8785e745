"""Off-the-shelf hardware as plain data and wire formats: servo-bus packet codecs (Feetech STS/SCS,
Dynamixel Protocol 2.0), servo register tables, the BNO055 IMU's UART protocol, and the
calibration file. Low in the import graph like `simreal.protocol`: the deploy driver (host side)
and the mock robot (device side) both use it, so both ends speak the same bytes.
"""
