"""Evaluation: PSNR, the FID Inception features, FID/KID, the I3D network and FVD, and the evaluate
stage's body (ul.eval.evaluate). Imports ul.core and ul.common only."""
