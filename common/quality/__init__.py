"""How good generated tunes are: figures per tune and batch, and the copy check."""
