"""Fine-tuning on the robot (issue 16): a bounded residual on the simulation policy, learned
off-policy from the deploy runtime's episodes (simreal.finetune.session)."""

BOUND = 0.4     # the default residual bound, action units (0.2 rad on the quadruped): the most an action may move
