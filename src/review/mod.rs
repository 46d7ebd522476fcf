//! The data loop: review states and transitions, batches, audits, triage, evaluation, agreement.
