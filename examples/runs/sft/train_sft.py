"""TRL config of the sft example run.

Documentation-level: it records the hyperparameters that scripts/train-example-runs.py really used
(its own GRPO/SFT loop in PyTorch, which mirrors TRL's). It is not the script that produced the run.
Paths are relative to the repository root.
"""
from trl import SFTConfig, SFTTrainer, ModelConfig

model_args = ModelConfig(
    model_name_or_path='examples/base',
    torch_dtype="bfloat16",
)

training_args = SFTConfig(
    output_dir='examples/runs/sft',
    learning_rate=1e-05,
    lr_scheduler_type='constant',
    warmup_steps=0,
    weight_decay=0.0,
    adam_beta1=0.9,
    adam_beta2=0.999,
    max_grad_norm=1.0,
    per_device_train_batch_size=64,
    max_steps=160,
    save_steps=80,
    logging_steps=10,
    completion_only_loss=True,
    max_length=11,
    bf16=True,
    seed=0,
)
