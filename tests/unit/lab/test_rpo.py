"""The drill's RPO per kind of data (phoenix.lab.rpo), from writes and what came back."""

from phoenix.lab import rpo


def test_rpo_per_kind_from_the_writes_that_came_back():
    def measure(recovered):
        return rpo.measure(writes, disaster_at=111.0, snapshot_at=90.0, recovered=recovered)

    writes = [rpo.Write(rpo.ISSUES, str(n), 100.0 + n) for n in range(1, 11)]
    writes += [rpo.Write(rpo.COMMITS, sha, at) for sha, at in (("a", 101), ("b", 105),
                                                                ("c", 109))]
    have = {rpo.ISSUES: {str(n) for n in range(1, 9)}, rpo.COMMITS: {"a", "z"}}
    got = measure(lambda kind: have[kind])
    issues, commits = got[rpo.ISSUES], got[rpo.COMMITS]
    assert (issues["recovered"], issues["lost"], issues["rpo_seconds"]) == (8, 2, 3.0)
    assert issues["oldest_lost_s_before_disaster"] == 2.0
    assert not issues["lost_before_a_recovered_one"]
    assert (commits["recovered"], commits["lost"], commits["rpo_seconds"]) == (1, 2, 10.0)
    everything = {rpo.ISSUES: {str(n) for n in range(1, 11)}, rpo.COMMITS: {"c"}}
    got = measure(lambda kind: everything[kind])
    assert got[rpo.ISSUES]["rpo_seconds"] == got[rpo.COMMITS]["rpo_seconds"] == 0.0
    hole = {rpo.ISSUES: {str(n) for n in range(1, 11)} - {"3"}, rpo.COMMITS: {"c"}}
    got = measure(lambda kind: hole[kind])
    assert got[rpo.ISSUES]["lost_before_a_recovered_one"]
    none = {rpo.ISSUES: set(), rpo.COMMITS: set()}
    got = measure(lambda k: none[k])
    assert got[rpo.COMMITS]["rpo_seconds"] == 21.0   # everything since the snapshot


def test_the_promise_is_about_the_oldest_write_lost_not_the_newest_recovered():
    # pushes every 4 s; the disaster at 120; the newest recovered at 104 (RPO bound 16 s),
    # the oldest lost at 108: 12 s before the disaster, within a 15 s promise
    writes = [rpo.Write(rpo.COMMITS, sha, at) for sha, at in (("a", 100), ("b", 104),
                                                               ("c", 108), ("d", 112))]
    got = rpo.measure(writes, disaster_at=120.0, snapshot_at=90.0,
                      recovered=lambda kind: {"b"}, promises={rpo.COMMITS: 15})
    commits = got[rpo.COMMITS]
    assert (commits["rpo_seconds"], commits["oldest_lost_s_before_disaster"]) == (16.0, 12.0)
    assert commits["promise_seconds"] == 15.0 and commits["promise_kept"]
    got = rpo.measure(writes, disaster_at=120.0, snapshot_at=90.0,
                      recovered=lambda kind: {"a"}, promises={rpo.COMMITS: 15})
    assert not got[rpo.COMMITS]["promise_kept"]   # "b", 16 s before, was lost
    everything = rpo.measure(writes, disaster_at=120.0, snapshot_at=90.0,
                             recovered=lambda kind: {"d"}, promises={rpo.COMMITS: 15})
    assert everything[rpo.COMMITS]["promise_kept"]
    assert "promise_kept" not in rpo.measure(writes, disaster_at=120.0, snapshot_at=90.0,
                                             recovered=lambda kind: {"d"})[rpo.COMMITS]


def test_every_file_kind_is_held_to_the_interval_and_an_avatar_supersedes_the_earlier_ones():
    # an avatar every 6 s: the one back is the second, so the first is no loss; the third,
    # 9 s before the disaster, is lost within a 15 s promise. Attachments: each by its key.
    writes = [rpo.Write(rpo.AVATARS, sha, at) for sha, at in (("x", 100), ("y", 106),
                                                               ("z", 112))]
    writes += [rpo.Write(rpo.ATTACHMENTS, key, at) for key, at in (("a1", 101), ("a2", 118))]
    back = {rpo.AVATARS: {"y"}, rpo.ATTACHMENTS: {"a1"}}
    got = rpo.measure(writes, disaster_at=121.0, snapshot_at=90.0, recovered=lambda k: back[k],
                      promises=dict.fromkeys(rpo.FILES, 15))
    avatars, attachments = got[rpo.AVATARS], got[rpo.ATTACHMENTS]
    assert (avatars["recovered"], avatars["lost"]) == (2, 1)
    assert avatars["oldest_lost_s_before_disaster"] == 9.0 and avatars["promise_kept"]
    assert attachments["oldest_lost_s_before_disaster"] == 3.0 and attachments["promise_kept"]
    back[rpo.ATTACHMENTS] = set()  # one written 20 s before came back without its file
    got = rpo.measure(writes, disaster_at=121.0, snapshot_at=90.0, recovered=lambda k: back[k],
                      promises=dict.fromkeys(rpo.FILES, 15))
    assert not got[rpo.ATTACHMENTS]["promise_kept"]
