"""Fine-tuning on the robot (issue 16): where the reward's velocity comes from, and (to come) the
learner that runs beside `simreal deploy`'s runtime."""
