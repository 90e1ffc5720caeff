"""generate() settings for every generative task (text-generation, summarization, translation, Whisper), merged in
one place: the recipe's `infer.generation`, then the command line's flags; what neither sets is left to the model's
own generation_config, which generate() reads. Sampling-only settings (temperature, top_p, top_k) are passed only
when the run samples, and --top-k / infer.generation.top_k is the only top-k: infer.top_k (labels per input for the
classifiers) never reaches generate(), where its default of 1 turned sampling into greedy decoding."""

from __future__ import annotations

from pydantic import Field

from taskcli.task import InferOptions

SAMPLING_ONLY = ("temperature", "top_p", "top_k")


class GenerationOptions(InferOptions):
    """The `infer` flags of every generating task: generate() settings (None: the recipe's, else the model's own)
    and --seed."""

    max_new_tokens: int | None = Field(None, ge=1)
    num_beams: int | None = Field(None, ge=1)
    do_sample: bool | None = Field(None, json_schema_extra={"flag": "--do-sample/--greedy"})
    temperature: float | None = Field(None, ge=0.0)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)  # sampling's top-k (no recipe default: infer.top_k is the classifiers')
    seed: int | None = None


FLAGS = tuple(name for name in GenerationOptions.model_fields if name not in InferOptions.model_fields
              and name != "seed")  # the generate() settings among them


def settings(run, model, options: GenerationOptions, default_max_new_tokens: int | None = None) -> dict:
    """Keyword arguments for model.generate(); applies --seed when sampling."""
    gen = dict(run.recipe.infer.generation)
    gen.update({k: getattr(options, k) for k in FLAGS if getattr(options, k) is not None})
    config = getattr(model, "generation_config", None)
    if not gen.get("do_sample", getattr(config, "do_sample", False)):
        for key in SAMPLING_ONLY:
            gen.pop(key, None)
    elif options.seed is not None:
        from transformers import set_seed

        set_seed(options.seed)
    if "max_new_tokens" not in gen:  # the model's own, else the task's default (None: generate()'s max_length)
        limit = getattr(config, "max_new_tokens", None) or default_max_new_tokens
        if limit:
            gen["max_new_tokens"] = limit
    return gen
