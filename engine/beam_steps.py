"""transformers' beam search, one step at a time, for one request among others in a running batch.

`generate(num_beams=…)` owns its loop: a request searched with it holds the model until its best
beam is known. The API scheduler instead advances every request by one token per model step, so a
beam request's beams are rows of the running batch, stepped with the greedy and sampled rows of
other requests. `BeamSteps` is the search's bookkeeping between two steps, written after
transformers' `GenerationMixin._beam_search` (5.x: top 2·beams continuations over all beams,
finished hypotheses scored with the length penalty, early stopping once `num_beams` hypotheses
ended or none can improve), so a request answers exactly as `ChatEngine.beam_search` answers it
alone (tests/test_beams.py checks this).

It also knows which tokens are already decided: those every live beam and every kept hypothesis
share. The scheduler streams them as they settle instead of sending the reply whole at the end.
"""

from collections.abc import Collection

_NEVER = -1.0e9  # transformers' score for "cannot be chosen"


class BeamSteps:
    def __init__(
        self,
        prompt: list[int],
        *,
        num_beams: int,
        length_penalty: float,
        repetition_penalty: float,
        stop_ids: Collection[int],
        max_new_tokens: int,
        device=None,
    ):
        import torch
        from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

        self.num_beams = num_beams
        self.length_penalty = length_penalty
        self.max_new_tokens = max_new_tokens
        self._stops = torch.tensor(sorted(set(stop_ids)), device=device)
        self._keep = max(2, 1 + len(self._stops)) * num_beams
        self._processors = LogitsProcessorList()
        if repetition_penalty != 1.0:
            self._processors.append(RepetitionPenaltyLogitsProcessor(repetition_penalty))
        self._top = torch.arange(self._keep, device=device) < num_beams
        # the live beams (prompt + tokens so far) and their summed log-probabilities; at the start
        # every beam is the prompt, and only the first may continue (as transformers does)
        self.sequences = torch.tensor([prompt] * num_beams, device=device)
        self.scores = torch.full((num_beams,), _NEVER, device=device)
        self.scores[0] = 0.0
        self._prompt_length = len(prompt)
        # the finished hypotheses: their tokens after the prompt (stop token included) and scores
        self.ended: list[list[int]] = [[] for _ in range(num_beams)]
        self.ended_scores = torch.full((num_beams,), _NEVER, device=device)
        self.ended_real = torch.zeros(num_beams, dtype=torch.bool, device=device)
        self._may_improve = True
        self.generated = 0
        self.done = False

    @classmethod
    def for_decoding(cls, prompt: list[int], decoding, stop_ids, max_new_tokens=None, device=None):
        """The search a Decoding asks for (its beams, length and repetition penalties), within
        `max_new_tokens` (else the decoding's own)."""
        return cls(
            prompt,
            num_beams=decoding.num_beams,
            length_penalty=decoding.length_penalty,
            repetition_penalty=decoding.repetition_penalty,
            stop_ids=stop_ids,
            max_new_tokens=max_new_tokens or decoding.max_new_tokens,
            device=device,
        )

    def advance(self, logits) -> tuple[list[int], list[int]] | None:
        """Given the next-token logits of each live beam (num_beams × vocabulary), the beams that go on
        (indices of the rows they continue) and their new tokens; None once the search has ended."""
        import torch

        vocabulary = logits.shape[-1]
        log_probs = torch.nn.functional.log_softmax(logits.float(), dim=-1)
        log_probs = self._processors(self.sequences, log_probs)
        log_probs = (log_probs + self.scores[:, None]).reshape(1, -1)
        top_scores, top_indices = torch.topk(log_probs, k=self._keep)
        top_scores, top_indices = top_scores[0], top_indices[0]
        parents = top_indices // vocabulary
        tokens = top_indices % vocabulary
        candidates = torch.cat((self.sequences[parents], tokens[:, None]), dim=1)
        hits = torch.isin(tokens, self._stops)
        if self.generated + 1 >= self.max_new_tokens:
            hits = torch.ones_like(hits)  # transformers' max-length criterion

        running = top_scores + hits.float() * _NEVER
        chosen = torch.topk(running, k=self.num_beams)[1]
        self._update_ended(candidates, top_scores, hits)
        self.sequences, self.scores = candidates[chosen], running[chosen]
        self.generated += 1
        self._check_improvement()
        all_ended = bool(self.ended_real.all())
        if not self._may_improve or all_ended or bool(hits.all()):
            self.done = True
            return None
        return parents[chosen].tolist(), tokens[chosen].tolist()

    def _update_ended(self, candidates, top_scores, hits) -> None:
        import torch

        just_ended = hits & self._top
        scores = top_scores / ((self.generated + 1) ** self.length_penalty)
        if bool(self.ended_real.all()) or not self._may_improve:
            scores = scores + _NEVER
        scores = scores + (~just_ended).float() * _NEVER
        merged_scores = torch.cat((self.ended_scores, scores))
        merged_real = torch.cat((self.ended_real, just_ended))
        new = [candidates[index, self._prompt_length :].tolist() for index in range(len(candidates))]
        merged = self.ended + new
        best = torch.topk(merged_scores, k=self.num_beams)[1].tolist()
        self.ended = [merged[index] for index in best]
        self.ended_scores, self.ended_real = merged_scores[best], merged_real[best]

    def _check_improvement(self) -> None:
        import torch

        best_possible = self.scores[0] / (self.generated**self.length_penalty)
        if bool(self.ended_real.all()):
            worst = torch.min(self.ended_scores)
            self._may_improve = self._may_improve and bool(best_possible > worst)

    def best(self) -> list[int]:
        """The chosen hypothesis's tokens after the prompt (its stop token included), once done."""
        return self.ended[0]

    def settled(self) -> list[int]:
        """The tokens the reply will start with whatever comes next: the common beginning of every
        live beam and every kept hypothesis (stop tokens never count as settled)."""
        rows = [row[self._prompt_length :] for row in self.sequences.tolist()]
        rows += [tokens for tokens, real in zip(self.ended, self.ended_real.tolist(), strict=True) if real]
        stops = set(self._stops.tolist())
        common = []
        for column in zip(*rows, strict=False):
            if len(set(column)) != 1 or column[0] in stops:
                break
            common.append(column[0])
        return common
