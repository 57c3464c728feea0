"""Rater-science statistics: plain numbers in, plain numbers out, no Django.

``agreement`` holds kappa, Krippendorff's alpha, bootstrap intervals, per-rater
reliability and test-retest; ``turing`` the visual Turing test (real against
synthetic); ``drift`` score and time against position in a rating session.
"""
