"""Deep-learning data cleaning (CRESST seed paper 000; Cait seed paper 001, section 3.2).

preprocess (downsample to 512, min-max scale), models (CNN, LSTM, TSCN, TST, Cait CNN),
augment (pile-up, noise, time shift), data (chunked sources, weak shuffling), train, predict.
"""
from .models import LEARNING_RATES, MODELS, build_model, scores_from_logits
from .predict import clean_events, decide, predict_scores, predictions_dataset
from .preprocess import LENGTH, downsample, minmax_scale, preprocess
from .train import load_model, plot_loss_curves, save_model, train_model

__all__ = [
    "LEARNING_RATES", "LENGTH", "MODELS", "build_model", "clean_events", "decide", "downsample", "load_model",
    "minmax_scale", "plot_loss_curves", "predict_scores", "predictions_dataset", "preprocess", "save_model",
    "scores_from_logits", "train_model",
]
