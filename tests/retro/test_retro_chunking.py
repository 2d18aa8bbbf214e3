import doctest

import numpy as np
import pytest

from indexer.errors import InvalidInput
from indexer.retro import keyindex, token_chunks
from indexer.retro.token_chunks import check_token_ids, split_chunks, with_continuation


@pytest.mark.parametrize("module", [token_chunks, keyindex])
def test_doctests(module):
    assert doctest.testmod(module).failed == 0


def test_split_chunks_exact_multiple_has_no_padding():
    tokens, lengths = split_chunks(np.arange(8), 4, pad_id=99)
    assert tokens.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert lengths.tolist() == [4, 4]


def test_split_chunks_empty_document_has_no_chunks():
    tokens, lengths = split_chunks(np.zeros(0, np.int32), 4, pad_id=0)
    assert tokens.shape == (0, 4) and lengths.shape == (0,)


def test_continuation_stops_at_document_boundary():
    tokens, lengths = split_chunks(np.arange(1, 6), 2, pad_id=0)  # [1 2][3 4][5 _]
    other, olen = split_chunks(np.arange(10, 14), 2, pad_id=0)  # [10 11][12 13]
    all_t, all_l = np.concatenate([tokens, other]), np.concatenate([lengths, olen])
    doc_rows = np.array([0, 0, 0, 1, 1])
    ids, mask = with_continuation(np.arange(5), all_t, all_l, doc_rows, pad_id=0)
    assert ids[1].tolist() == [3, 4, 5, 0]
    assert ids[2].tolist() == [5, 0, 0, 0]  # last chunk of doc 0: no continuation from doc 1
    assert mask[2].tolist() == [True, False, False, False]
    assert ids[4].tolist() == [12, 13, 0, 0] and not mask[4, 2:].any()


@pytest.mark.parametrize("ids", [[], [[1, 2]], [1.5], [-1], [50]])
def test_check_token_ids_rejects(ids):
    with pytest.raises(InvalidInput):
        check_token_ids(ids, vocab_size=50)
