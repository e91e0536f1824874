"""Printers: BOCA ticket printers (FGL), card printers (Evolis, CUPS), their transports."""
