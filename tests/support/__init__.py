"""Helpers the tests share: the harness (databases, the fake Slack, the bot), the Slack-side
waits and clicks, the command line, the local workspace's tiny bot, and the real-world schema."""
