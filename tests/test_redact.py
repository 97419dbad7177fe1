from fanout.redact import redact_text, redact_url


def test_passwords_and_tokens_are_masked():
    assert redact_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("rediss://bot:s3cret@h:6380/1") == "rediss://bot:***@h:6380/1"
    assert redact_url("redis://s3cret@h") == "redis://***@h"
    assert redact_url("redis://h:6379/0?password=s3cret&x=1") == "redis://h:6379/0?password=***&x=1"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    text = "failed: redis://u:p4ss@10.0.0.1:6379/0 and rediss://:tok@x/0."
    out = redact_text(text)
    assert "p4ss" not in out and "tok" not in out and out.count("***") == 2
