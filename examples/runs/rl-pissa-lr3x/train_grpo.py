"""TRL config of the rl-pissa-lr3x example run (GRPO on LoRA factors).

Documentation-level: it records the hyperparameters that scripts/train-example-runs.py really used
(its own GRPO loop and LoRA layers in PyTorch, which mirror TRL's and PEFT's). It is not the script that
produced the run. Paths are relative to the repository root.
"""
from peft import LoraConfig
from trl import GRPOConfig, GRPOTrainer, ModelConfig

model_args = ModelConfig(
    model_name_or_path='examples/base',
    torch_dtype="bfloat16",
)

peft_config = LoraConfig(
    r=8,
    lora_alpha=16,
    lora_dropout=0.0,
    target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
    init_lora_weights="pissa",
    task_type="CAUSAL_LM",
)

training_args = GRPOConfig(
    output_dir='examples/runs/rl-pissa-lr3x',
    learning_rate=9e-05,
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
    seed=0,
)

# Saved converted to plain LoRA against the original base (rank 2r), as PEFT documents:
# model.save_pretrained(out, path_initial_model_for_weight_conversion=initial_adapter_dir)
