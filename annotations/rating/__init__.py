"""The physician's hot path, walled off: serving the next image
(``serving``), recording a rating (``submit``), who may rate a round
(``access``) and every hand-written statement they run (``queries``)."""
