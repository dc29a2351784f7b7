"""The project's demo world: coloured shapes on plain backgrounds.

``shapes`` draws the procedurally generated training images and their captions;
``classify`` reads the shape, its colour and the background colour back out of
any 64x64 image by simple pixel statistics, so tests can score generated images.
"""
