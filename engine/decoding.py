"""The decoding loop of a batch: prefill, then one token per row per step, each row leaving the
batch as soon as it is done; the token chooser (greedy or sampled with the role's settings); and
the KV-cache helpers that batch separately prefilled rows."""

from collections.abc import Sequence

from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from engine.roles import Decoding


def shrinking_batch(model, input_ids, attention_mask, limits, stop_ids, choose, ends=None):
    """Decoding of a left-padded batch in which each row leaves as soon as it is done (a stop
    token, its own limit, or `ends(tokens)` saying its text reached a stop text): the KV cache
    drops the row, so the remaining steps only compute the rows still writing. `generate()` would
    run every row until the last one finishes."""
    import torch

    stops = set(stop_ids)
    replies: list[list[int]] = [[] for _ in limits]
    active = list(range(len(limits)))  # original row of each row still in the batch
    sequences = input_ids
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits, cache = _prefill(model, input_ids, attention_mask, positions)
    positions = positions[:, -1:]
    while True:
        tokens = choose(sequences, logits)
        keep = []
        for slot, (row, token) in enumerate(zip(active, tokens.tolist(), strict=True)):
            if token in stops:
                continue
            replies[row].append(token)
            if len(replies[row]) < limits[row] and not (ends and ends(replies[row])):
                keep.append(slot)
        if not keep:
            return replies
        if len(keep) < len(active):
            selected = torch.tensor(keep, device=tokens.device)
            cache.batch_select_indices(selected)
            active = [active[slot] for slot in keep]
            tokens, sequences = tokens[selected], sequences[selected]
            attention_mask, positions = attention_mask[selected], positions[selected]
        sequences = torch.cat((sequences, tokens[:, None]), dim=1)
        attention_mask = torch.cat((attention_mask, attention_mask.new_ones(len(active), 1)), dim=1)
        positions = positions + 1
        output = model(
            input_ids=tokens[:, None],
            attention_mask=attention_mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        )
        logits, cache = output.logits[:, -1].float(), output.past_key_values


def _prefill(model, input_ids, attention_mask, positions):
    """The prompts' pass: last-position logits and the batch's KV cache.

    On a CPU, computing the padding of a left-padded batch is pure waste (compute-bound), so each
    prompt runs alone and the row caches are stacked, left-padded with masked zeros. A GPU runs the
    padded batch at once. Caches we cannot stack (see stack_left_padded) take the padded path."""
    import torch

    if input_ids.shape[0] > 1 and input_ids.device.type == "cpu":
        rows, row_logits = [], []
        pads = (attention_mask == 0).sum(-1).tolist()
        for row, pad in enumerate(pads):
            output = model(input_ids=input_ids[row : row + 1, pad:], use_cache=True, logits_to_keep=1)
            rows.append(output.past_key_values)
            row_logits.append(output.logits[:, -1].float())
        cache = stack_left_padded(rows, pads)
        if cache is not None:
            return torch.cat(row_logits), cache
    output = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,  # the prompt's other positions need no vocabulary-sized logits
    )
    return output.logits[:, -1].float(), output.past_key_values


def stack_left_padded(caches, pads):
    """One batch cache from single-row (or batch) caches whose rows are `pads` shorter than the
    widest, left-padded with masked zeros; None when a layer cannot be stacked.

    A sliding-window layer keeps only its last `sliding_window - 1` positions: every row is aligned
    on the batch's common length, so each keeps its own tail and is padded in front up to what the
    widest keeps (the attention mask, as wide as the whole history, hides the padding)."""
    import torch
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    from engine.yuan import YuanCache, YuanCacheLayer

    stackable = (DynamicLayer, DynamicSlidingWindowLayer, YuanCacheLayer)
    if any(
        type(layer) not in stackable or getattr(layer, "record_past", False)
        for c in caches
        for layer in c.layers
    ):
        return None
    merged = caches[0]
    for index, layer in enumerate(merged.layers):
        rows = [cache.layers[index] for cache in caches]
        layer_pads = pads
        if isinstance(layer, DynamicSlidingWindowLayer):
            widest = max(row.cumulative_length + pad for row, pad in zip(rows, pads, strict=True))
            kept = min(widest, layer.sliding_window - 1)
            layer_pads = [kept - row.keys.shape[-2] for row in rows]
            layer.cumulative_length = widest
        layer.keys = _left_pad([row.keys for row in rows], layer_pads)
        layer.values = _left_pad([row.values for row in rows], layer_pads)
        if isinstance(layer, YuanCacheLayer):
            states = [row.lf_state for row in rows]
            layer.lf_state = tuple(torch.cat(parts) for parts in zip(*states, strict=True))
    if isinstance(merged, YuanCache) and merged.last_eod is not None:
        # positions move right by the padding in front of each row
        eods = [cache.last_eod for cache in caches]
        merged.last_eod = torch.cat([eod + pad * (eod >= 0) for eod, pad in zip(eods, pads, strict=True)])
    return merged


def select_rows(cache, order: list[int]) -> None:
    """Keep the batch cache's rows `order` (a row may come twice: a beam that forks). When the batch
    keeps its size, only the rows that change are copied: in a beam search most beams continue
    their own row, and copying the whole cache each step would cost more than the step's attention."""
    import torch
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    layers = cache.layers
    plain = all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in layers)
    if not plain or len(order) != layers[0].keys.shape[0]:
        cache.batch_select_indices(torch.tensor(order, device=layers[0].keys.device))
        return
    changed = [row for row, source in enumerate(order) if source != row]
    if not changed:
        return
    into = torch.tensor(changed, device=layers[0].keys.device)
    source = torch.tensor([order[row] for row in changed], device=into.device)
    with torch.inference_mode():  # the cache's tensors were made under it, and change only under it
        for layer in layers:
            layer.keys[into] = layer.keys[source]  # the right side is gathered before it is written
            layer.values[into] = layer.values[source]


def token_chooser(model, decoding: Decoding, generator=None, top_k: int | None = None):
    """The next token as `generate()` picks it: repetition penalty, then (when sampling)
    temperature, top-k (`top_k`; None: the model's, 50 unless its generation config says
    otherwise; 0: none) and top-p. A `generator` makes sampling reproducible for one request,
    whatever else runs beside it."""
    import torch

    steps = LogitsProcessorList()
    if decoding.repetition_penalty != 1.0:
        steps.append(RepetitionPenaltyLogitsProcessor(decoding.repetition_penalty))
    if decoding.do_sample:
        if top_k is None:
            top_k = getattr(model.generation_config, "top_k", None) or 50
        if decoding.temperature != 1.0:
            steps.append(_HighestAtZero())
            # float32 holds no temperature below its smallest normal number (5e-324 becomes 0: NaN)
            steps.append(TemperatureLogitsWarper(max(decoding.temperature, torch.finfo(torch.float32).tiny)))
        if top_k:
            steps.append(TopKLogitsWarper(top_k))
        if decoding.top_p < 1.0:
            steps.append(TopPLogitsWarper(decoding.top_p))

    def choose(sequences, logits):
        """One next token per row of `sequences`, from the last position's `logits`."""
        scores = steps(sequences, logits)
        if decoding.do_sample:
            return torch.multinomial(scores.softmax(-1), num_samples=1, generator=generator)[:, 0]
        return scores.argmax(-1)

    return choose


class _HighestAtZero(LogitsProcessor):
    """Shifts each row so its best score is 0 (softmax, top-k and top-p ignore a shift): a tiny
    temperature then makes the others -inf, a near-greedy choice, instead of dividing large
    scores into inf and NaN."""

    def __call__(self, input_ids, scores):
        return scores - scores.max(dim=-1, keepdim=True).values


def _left_pad(states, pads):
    """Stack (1, heads, length, dim) states into one batch, zeros in front up to a common length."""
    import torch
    import torch.nn.functional as F

    return torch.cat([F.pad(state, (0, 0, pad, 0)) for state, pad in zip(states, pads, strict=True)])


def mbr_choice(candidates: Sequence[str]) -> int:
    """Minimum-Bayes-risk choice with chrF as the utility: the index of the candidate whose mean
    chrF against every other candidate is highest (the first of equals). Each candidate stands in
    for the reference the others are scored against, so the one most like the rest wins."""
    from sacrebleu.metrics import CHRF

    if len(candidates) < 2:
        return 0
    chrf = CHRF()
    agreement = [
        sum(chrf.sentence_score(candidate, [other]).score for j, other in enumerate(candidates) if j != i)
        for i, candidate in enumerate(candidates)
    ]
    return max(range(len(candidates)), key=lambda i: (agreement[i], -i))
