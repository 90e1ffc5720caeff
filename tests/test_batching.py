"""Where infer cuts a chunk's length-sorted rows into batches (inference.batch_bounds): the least padded work plus
a cost per forward call, at most --batch-size rows a batch, and the rows a mixed-length file gives unchanged."""

import itertools
import json
import random

from conftest import same_rows


def fixed(lengths, most):
    return [(i, min(i + most, len(lengths))) for i in range(0, len(lengths), most)]


def cost(lengths, bounds, call):
    return sum((end - start) * lengths[start] + call for start, end in bounds)


def all_bounds(n, most):
    """Every way to cut n rows into contiguous batches of at most `most` rows."""
    for cuts in itertools.product((False, True), repeat=n - 1):
        edges = [0, *(i + 1 for i, cut in enumerate(cuts) if cut), n]
        bounds = list(zip(edges, edges[1:]))
        if all(end - start <= most for start, end in bounds):
            yield bounds


def test_batches_cover_the_rows_in_order_and_cost_least():
    from taskcli import inference

    rng = random.Random(0)
    for _ in range(40):
        n, most = rng.randint(1, 10), rng.randint(1, 5)
        lengths = sorted((rng.choice([3, 4, 9, 30, 31, 80]) for _ in range(n)), reverse=True)
        bounds = inference.batch_bounds(lengths, most)
        assert [s for s, _ in bounds] == [0, *(e for _, e in bounds[:-1])] and bounds[-1][1] == n
        assert all(0 < e - s <= most for s, e in bounds)
        call = inference.CALL_ROWS * sum(lengths) / n
        best = min(cost(lengths, b, call) for b in all_bounds(n, most))  # brute force: the optimum
        assert abs(cost(lengths, bounds, call) - best) < 1e-6, (lengths, most, bounds)


def test_equal_lengths_make_full_batches_first_and_classes_are_not_mixed():
    from taskcli import inference

    assert inference.batch_bounds([12] * 100, 64) == [(0, 64), (64, 100)]  # as fixed-size batches were
    assert inference.batch_bounds([], 8) == []
    # 40 long rows then 40 short ones: fixed batches of 64 padded 24 short rows to the long length
    lengths = [60] * 40 + [7] * 40
    assert inference.batch_bounds(lengths, 64) == [(0, 40), (40, 80)]
    assert cost(lengths, fixed(lengths, 64), 0) - sum(lengths) == 24 * 53


def mixed_texts(n=70):
    rng = random.Random(1)
    words = "Alice Martin works for Globex in Tokyo and Paris while the team from Acme visited Berlin".split()
    return [" ".join(rng.choice(words) for _ in range(rng.choice([2, 5, 9, 20, 40]))) for _ in range(n)]


def test_a_mixed_length_file_gives_the_rows_it_gave_with_fixed_batches(tmp_path, monkeypatch, cli, one_torch_thread):
    """Same rows, in input order, as with the old fixed-size batches and as with no padding at all (one row a
    batch); scores within 1e-5 (they move in the 7th digit with other batch mates)."""
    from taskcli import inference

    path = tmp_path / "mixed.txt"
    path.write_text("\n".join(mixed_texts()) + "\n", encoding="utf-8")
    model = tmp_path / "ner"
    assert cli("finetune", "ner", "--smoke", "-o", model, "--set", "train.epochs=1").exit_code == 0

    def rows(*extra):
        result = cli("infer", "ner", path, "--model", model, "--json", "--batch-size", "16", *extra)
        assert result.exit_code == 0, result.stderr
        return [json.loads(line) for line in result.stdout.splitlines()]

    new, alone = rows(), rows("--batch-size", "1")
    monkeypatch.setattr(inference, "batch_bounds", fixed)
    old = rows()
    assert [r["input"] for r in new] == mixed_texts()
    assert same_rows(new, old) and same_rows(new, alone)
    assert any(r["entities"] for r in new)  # the comparison saw entities, not only empty rows
