"""What watches an agent: evaluation games (evaluate.py), videos (video.py, and periodic_video.py
while training) and learning curves (plot.py)."""
