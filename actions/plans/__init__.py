"""One module per runbook scenario: `full.py` (Scenario 1), `tables/` (Scenario 2), `rerun.py`
(Scenario 3), `app.py` (Scenario 4), `objects.py` and `columns.py` (Part 7), `restart.py`,
`cleanup.py`, `quarantine.py`, `remedies.py`; `partial.py` has what the partial rollbacks share and
`facts.py` the facts several parts read. A new scenario is a module here and one row in
`actions/verbs.py`.
"""
