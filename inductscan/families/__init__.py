"""Model families beyond the GPT-2 and GPT-NeoX of :mod:`inductscan.architecture`, each a config
reader and a map of weight names to tensors, beside the forward pass that honours its flags.

    llama              Llama, Mistral, Qwen2, OLMo 1/2/3, SmolLM3: one architecture, flags per config class
    llama_forward      their forward pass (opens no file)
    native             the natively run families: config reader, weight map and forward pass of each
    transformers_path  any other causal language model transformers knows, run through its own model
    registry           a checkpoint's config -> its family's architecture, and the scorer for it

Nothing is imported here: :mod:`inductscan.measure` imports :mod:`~inductscan.families.native`,
and :mod:`~inductscan.families.registry` imports :mod:`inductscan.measure`.
"""
