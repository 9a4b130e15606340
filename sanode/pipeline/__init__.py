"""The study pipeline above training: validated study settings, Ray Tune trials, MLflow
tracking, model selection, the evaluation and analysis stages (``analyses``), tables, figures
and the report that renders them into the docs."""
