"""How good an adapter is: held-out evaluation (`evaluate`), the scores and their paired-bootstrap
significance, and a translator's own mistakes turned into preference pairs."""
