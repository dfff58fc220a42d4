"""TRL config of the rl-kl-seed1 example run.

Documentation-level: it records the hyperparameters that scripts/train-example-runs.py really used
(its own GRPO/SFT loop in PyTorch, which mirrors TRL's). It is not the script that produced the run.
Paths are relative to the repository root.
"""
from trl import GRPOConfig, GRPOTrainer, ModelConfig

model_args = ModelConfig(
    model_name_or_path='examples/base',
    torch_dtype="bfloat16",
)

training_args = GRPOConfig(
    output_dir='examples/runs/rl-kl-seed1',
    learning_rate=3e-06,
    lr_scheduler_type='constant',
    warmup_steps=0,
    weight_decay=0.0,
    adam_beta1=0.9,
    adam_beta2=0.999,
    max_grad_norm=1.0,
    beta=0.04,
    epsilon=0.2,
    num_generations=8,
    num_iterations=2,
    per_device_train_batch_size=64,
    temperature=1.0,
    max_prompt_length=7,
    max_completion_length=4,
    loss_type='dapo',
    scale_rewards='group',
    max_steps=160,
    save_steps=80,
    logging_steps=10,
    bf16=True,
    seed=1,
)
