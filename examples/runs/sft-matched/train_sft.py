"""TRL config of the sft-matched example run.

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
    output_dir='examples/runs/sft-matched',
    learning_rate=1e-05,
    lr_scheduler_type='constant',
    warmup_steps=0,
    weight_decay=0.0,
    adam_beta1=0.9,
    adam_beta2=0.999,
    max_grad_norm=1.0,
    per_device_train_batch_size=64,
    max_steps=22,
    save_steps=10,
    logging_steps=10,
    completion_only_loss=True,
    max_length=11,
    bf16=True,
    seed=0,
)

# Size-matched control: the run was stopped (a TrainerCallback in TRL terms) at the first check, every 2 optimizer steps,
# at which sqrt(sum ||dW||_F^2 / sum ||W0||_F^2) over the linear weights of the bf16 weights reached rl-kl's final
# value 0.0024385127282408052: step 22. See size_match.json.
