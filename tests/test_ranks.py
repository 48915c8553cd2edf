from vig.ranks import is_first_process, launch_rank


def test_rank_comes_from_torchruns_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert (launch_rank(), is_first_process()) == ("0", True)
    monkeypatch.setenv("RANK", "3")
    assert (launch_rank(), is_first_process()) == ("3", False)
