"""FERD's training machinery, by role; train.py maps its flags onto the settings and calls run.train.

    settings.py  TrainSettings: every option of a run, typed and checked once
    run.py       train(settings): the story of a run (data, network, epochs, keep) and what it kept
    state.py   seeds and random states, the resume configuration and checks, progress, training errors
    data.py    training patches, the per-epoch test and validation sets, the FEN+GRX score used to select
    loop.py    model, loss, optimiser and loader (Trainer); one step (pinned to the authors'); one epoch;
               the divergence checks
    record.py  selection and what each epoch writes (FEN, training state, AUC table, plot, log line)
"""
