"""What needs rows and model files together: adapters with their folders, roles with their users,
conversations and their replies, blind votes, the chat CLI. It sits above engine/ and registry/,
which do not know each other."""
