"""generate() settings for every generative task (text-generation, summarization, translation, Whisper), merged in
one place: the recipe's `infer.generation`, then the command line's flags; what neither sets is left to the model's
own generation_config, which generate() reads. Sampling-only settings (temperature, top_p, top_k) are passed only
when the run samples, and --top-k / infer.generation.top_k is the only top-k: infer.top_k (labels per input for the
classifiers) never reaches generate(), where its default of 1 turned sampling into greedy decoding."""

from __future__ import annotations

# the `infer` flags that are generate() settings (--max-new-tokens, --do-sample/--greedy, ...), and --seed
FLAGS = ("max_new_tokens", "num_beams", "do_sample", "temperature", "top_p", "top_k")
OPTIONS = frozenset((*FLAGS, "seed"))
SAMPLING_ONLY = ("temperature", "top_p", "top_k")


def settings(run, model, options: dict, default_max_new_tokens: int | None = None) -> dict:
    """Keyword arguments for model.generate(); applies --seed when sampling."""
    gen = dict(run.recipe.infer.generation)
    gen.update({k: options[k] for k in FLAGS if options.get(k) is not None})
    config = getattr(model, "generation_config", None)
    if not gen.get("do_sample", getattr(config, "do_sample", False)):
        for key in SAMPLING_ONLY:
            gen.pop(key, None)
    elif options.get("seed") is not None:
        from transformers import set_seed

        set_seed(options["seed"])
    if "max_new_tokens" not in gen:  # the model's own, else the task's default (None: generate()'s max_length)
        limit = getattr(config, "max_new_tokens", None) or default_max_new_tokens
        if limit:
            gen["max_new_tokens"] = limit
    return gen
