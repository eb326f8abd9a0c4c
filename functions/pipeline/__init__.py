"""The train → validate → promote pipeline's Lambda steps (one Step Functions state machine).

``steps`` holds the AWS-facing logic of each state, the handler modules (``allocate``, ``train``,
``validate``, ``record``) are thin Powertools wrappers over it. docs/pipeline.md describes it.
"""
