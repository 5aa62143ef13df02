import pytest
import torch

from hieradist_lobes.cif_decoder import CIFDecoder, cif_beam_search

BOS, EOS, BLANK = 1, 2, 0


@pytest.fixture()
def decoder():
    torch.manual_seed(0)
    return CIFDecoder(vocab_size=9, cif_size=6, d_model=16, num_layers=2, nhead=2, d_ffn=32, dropout=0.0).eval()


def test_step_i_reads_previous_token_and_previous_fire_and_predicts_with_fire_i(decoder):
    tokens = torch.tensor([[BOS, 4, 5, 6]])
    fired = torch.randn(1, 4, 6)
    logits, states, final_states = decoder(tokens, fired)
    # Changing fire 2 changes step 2 (output uses c_2) and later steps (input uses c_2 at step 3), not 0 and 1.
    changed = fired.clone()
    changed[0, 2] += 1.0
    logits2, states2, final_states2 = decoder(tokens, changed)
    assert torch.allclose(logits[0, :2], logits2[0, :2], atol=1e-6)
    assert not torch.allclose(logits[0, 2], logits2[0, 2])
    assert torch.allclose(states[0, :3], states2[0, :3], atol=1e-6)  # the state at step 2 has not seen c_2
    assert not torch.allclose(states[0, 3], states2[0, 3])
    # The final state (after c_i is joined) at step 2 has seen c_2.
    assert torch.allclose(final_states[0, :2], final_states2[0, :2], atol=1e-6)
    assert not torch.allclose(final_states[0, 2], final_states2[0, 2])
    # Causal: changing token 3 (the input of step 3) leaves steps 0-2 alone.
    logits3 = decoder(torch.tensor([[BOS, 4, 5, 7]]), fired).logits
    assert torch.allclose(logits[0, :3], logits3[0, :3], atol=1e-6)


def test_the_original_decoder_structure():
    """fairseq CIF-HieraDist: input projection without bias, √e-scaled embeddings
    of std 1/√e, output bottleneck [state; c] → d without bias, then d → V without bias."""
    torch.manual_seed(0)
    decoder = CIFDecoder(vocab_size=50, cif_size=6, d_model=16, num_layers=1, nhead=2, d_ffn=32, embedding_size=64,
                         output_dim=12, dropout=0.0).eval()
    assert decoder.input_proj.bias is None and decoder.input_proj.in_features == 64 + 6
    assert decoder.bottleneck.bias is None
    assert (decoder.bottleneck.in_features, decoder.bottleneck.out_features) == (16 + 6, 12)
    assert decoder.output_proj.bias is None and decoder.output_proj.in_features == 12
    assert decoder.embedding_scale == pytest.approx(8.0)
    assert float(decoder.embedding.weight.detach().std()) == pytest.approx(64**-0.5, rel=0.05)
    # The logits are the output layer applied to the final states, which are the
    # bottleneck of [LayerNorm(state); c_i].
    tokens, fired = torch.tensor([[BOS, 4, 5]]), torch.randn(1, 3, 6)
    out = decoder(tokens, fired)
    assert torch.allclose(out.final_states, decoder.bottleneck(torch.cat([out.states, fired], -1)), atol=1e-6)
    assert torch.allclose(out.logits, decoder.output_proj(out.final_states), atol=1e-6)
    # The embedding enters scaled by √e: the same as an unscaled embedding with 8× the weights.
    scaled = CIFDecoder(vocab_size=50, cif_size=6, d_model=16, num_layers=1, nhead=2, d_ffn=32, embedding_size=64,
                        output_dim=12, dropout=0.0).eval()
    scaled.load_state_dict(decoder.state_dict())
    scaled.embedding.weight.data *= 8.0
    scaled.embedding_scale = 1.0
    assert torch.allclose(scaled(tokens, fired).logits, out.logits, atol=1e-5)


def test_padding_does_not_change_valid_steps(decoder):
    fired = torch.randn(2, 5, 6)
    tokens = torch.tensor([[BOS, 3, 4, 5, 6], [BOS, 7, 8, 0, 0]])
    logits = decoder(tokens, fired, torch.tensor([5, 3])).logits
    alone = decoder(tokens[1:, :3], fired[1:, :3]).logits
    assert torch.allclose(logits[1, :3], alone[0], atol=1e-5)
    with pytest.raises(ValueError, match="CIF outputs"):
        decoder(tokens, fired[:, :2])


def greedy_reference(decoder, fired, length):
    tokens = [BOS]
    for step in range(length):
        logits = decoder(torch.tensor([tokens]), fired[None, : step + 1]).logits
        scores = logits[0, -1].clone()
        scores[[BLANK, BOS]] = float("-inf")
        if step < length - 1:
            scores[EOS] = float("-inf")  # one token per fire: <eos> only at the last
        token = int(scores.argmax())
        if token == EOS:
            break
        tokens.append(token)
    return tokens[1:]


def test_beam_of_one_is_greedy_decoding(decoder):
    torch.manual_seed(1)
    fired = torch.randn(3, 6, 6) * 3
    lengths = torch.tensor([6, 4, 0])
    hyps = cif_beam_search(decoder, fired, lengths, BOS, EOS, beam_size=1, blocked=[BLANK, BOS])
    assert hyps == [greedy_reference(decoder, fired[b], int(lengths[b])) for b in range(3)]
    assert hyps[2] == []


def sequence_score(decoder, fired, tokens, length):
    prefix, total = [BOS], 0.0
    for step, token in enumerate(tokens + [EOS]):
        if step >= length:
            break
        logits = decoder(torch.tensor([prefix]), fired[None, : step + 1]).logits
        logprobs = torch.log_softmax(logits[0, -1], dim=-1)
        total += float(logprobs[token])
        prefix.append(token)
    return total


def test_wider_beams_never_score_worse(decoder):
    torch.manual_seed(2)
    fired = torch.randn(2, 5, 6)
    lengths = torch.tensor([5, 3])
    narrow = cif_beam_search(decoder, fired, lengths, BOS, EOS, beam_size=1, blocked=[BLANK, BOS])
    wide = cif_beam_search(decoder, fired, lengths, BOS, EOS, beam_size=6, blocked=[BLANK, BOS])
    for b in range(2):
        assert len(wide[b]) <= int(lengths[b])
        assert BLANK not in wide[b] and BOS not in wide[b] and EOS not in wide[b]
        assert sequence_score(decoder, fired[b], wide[b], int(lengths[b])) >= \
            sequence_score(decoder, fired[b], narrow[b], int(lengths[b])) - 1e-5


class FavouriteTokenLM(torch.nn.Module):
    """An LM that is sure the next token is 5."""

    def step(self, prev_tokens, state=None):
        logprobs = torch.full((*prev_tokens.shape, 9), -30.0)
        logprobs[..., 5] = 0.0
        return logprobs, state

    @staticmethod
    def reorder_state(state, rows):
        return state


def test_shallow_fusion_adds_the_weighted_lm_score(decoder):
    fired = torch.randn(1, 4, 6)
    plain = cif_beam_search(decoder, fired, torch.tensor([4]), BOS, EOS, beam_size=3, blocked=[BLANK, BOS])
    fused = cif_beam_search(decoder, fired, torch.tensor([4]), BOS, EOS, beam_size=3, blocked=[BLANK, BOS],
                            lm=FavouriteTokenLM(), lm_weight=1.0)
    assert fused == [[5, 5, 5, 5]]
    assert plain != fused


class EagerToStop(torch.nn.Module):
    """The decoder with +50 on the <eos> logit."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def step(self, prev_tokens, fired, cache=None):
        logits, cache = self.decoder.step(prev_tokens, fired, cache)
        return logits + 50.0 * torch.nn.functional.one_hot(torch.tensor(EOS), 9), cache

    def reorder_state(self, cache, rows):
        return self.decoder.reorder_state(cache, rows)


def test_eos_only_at_the_last_fire_even_when_the_decoder_prefers_it(decoder):
    torch.manual_seed(3)
    fired = torch.randn(2, 12, 6)
    lengths = torch.tensor([12, 7])
    eager = EagerToStop(decoder)  # a decoder that would stop at once
    for beam in (1, 3):
        hyps = cif_beam_search(eager, fired, lengths, BOS, EOS, beam_size=beam, blocked=[BLANK, BOS])
        assert [len(h) for h in hyps] == [11, 6]  # one token per fire, <eos> at the last


def prefix_beam_search(decoder, fired, fired_lengths, beam_size, lm=None, lm_weight=0.0):
    """The search without carried state, as it was before: at every fire the
    decoder and the LM run over each hypothesis's whole prefix."""
    batch, steps = fired.shape[0], fired.shape[1]
    k = beam_size
    tokens = torch.full((batch * k, 1), BOS, dtype=torch.long)
    scores = torch.full((batch, k), float("-inf"))
    scores[:, 0] = 0.0
    finished = torch.zeros(batch, k, dtype=torch.bool)
    fired_beams = fired.repeat_interleave(k, dim=0)
    for step in range(steps):
        logprobs = torch.log_softmax(decoder(tokens, fired_beams[:, : step + 1]).logits[:, -1], dim=-1)
        if lm is not None:
            logprobs = logprobs + lm_weight * lm(tokens)[:, -1]
        vocab = logprobs.shape[-1]
        logprobs = logprobs.view(batch, k, vocab)
        logprobs[:, :, [BLANK, BOS]] = float("-inf")
        logprobs[:, :, EOS] = logprobs[:, :, EOS].masked_fill((step < fired_lengths - 1)[:, None], float("-inf"))
        filler = torch.full((vocab,), float("-inf"))
        filler[EOS] = 0.0
        logprobs = torch.where((finished | (step >= fired_lengths)[:, None])[:, :, None], filler, logprobs)
        scores, flat = (scores[:, :, None] + logprobs).view(batch, k * vocab).topk(k, dim=-1)
        origin, token = flat // vocab, flat % vocab
        tokens = torch.cat([tokens[(origin + torch.arange(batch)[:, None] * k).view(-1)], token.view(-1, 1)], dim=1)
        finished = finished.gather(1, origin) | (token == EOS)
    results = []
    for b in range(batch):
        sequence = tokens[b * k + int(scores[b].argmax()), 1:].tolist()
        results.append(sequence[: sequence.index(EOS)] if EOS in sequence else sequence)
    return results


@pytest.mark.device
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_carried_state_decodes_the_same_hypotheses_as_rescoring_the_prefix(seed, device):
    """On ``--device`` the cached search; on the CPU the prefix search as reference."""
    from hieradist_lobes.lm import TokenLM

    torch.manual_seed(seed)
    decoder = CIFDecoder(vocab_size=9, cif_size=6, d_model=16, num_layers=2, nhead=2, d_ffn=32, output_dim=12,
                         dropout=0.1).eval()
    lm = TokenLM(vocab_size=9, embedding_size=8, hidden_size=16).eval()
    with torch.no_grad():  # a confident LM, so that a wrong LM state changes the search
        lm.output.weight.mul_(20.0)
        lm.embedding.weight.mul_(5.0)
    fired = torch.randn(4, 9, 6) * 2
    lengths = torch.tensor([9, 5, 1, 0])
    for beam in (1, 3, 6):
        for lm_args in ({}, {"lm": lm, "lm_weight": 0.5}):
            with torch.no_grad():
                expected = prefix_beam_search(decoder, fired, lengths, beam, **lm_args)
            on_device = {key: value.to(device) if key == "lm" else value for key, value in lm_args.items()}
            got = cif_beam_search(decoder.to(device), fired.to(device), lengths.to(device), BOS, EOS, beam_size=beam,
                                  blocked=[BLANK, BOS], **on_device)
            decoder.cpu(), lm.cpu()
            assert got == expected
            assert all(len(h) <= n for h, n in zip(got, lengths.tolist())) and got[3] == []


def test_a_cached_step_gives_the_logits_of_the_whole_prefix(decoder):
    torch.manual_seed(4)
    tokens, fired = torch.randint(3, 9, (3, 7)), torch.randn(3, 7, 6)
    tokens[:, 0] = BOS
    full = decoder(tokens, fired).logits
    cache = None
    for i in range(7):
        logits, cache = decoder.step(tokens[:, i], fired[:, i], cache)
        assert torch.allclose(logits, full[:, i], atol=1e-5)
    # Reordering the cache gives each row the history of the row it came from.
    rows = torch.tensor([2, 2, 0])
    cache = decoder.reorder_state(cache, rows)
    next_fire = torch.randn(3, 6)
    logits, _ = decoder.step(torch.tensor([4, 4, 4]), next_fire, cache)
    extended = decoder(torch.cat([tokens[rows], torch.full((3, 1), 4)], 1),
                       torch.cat([fired[rows], next_fire[:, None]], 1)).logits[:, -1]
    assert torch.allclose(logits, extended, atol=1e-5)
