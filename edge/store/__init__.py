"""The SQLite store and its migrations, with a narrow typed API per owner.

One mechanism: mixins over one base. `base.StoreBase` owns the store's two files (the main
file and its journal file, each with its own write lock), their connections (a direct sqlite3
reader for the scan path that sees both, one writer thread of `writer.Writer` per file), the
write paths (`_urgent` for journal records, group-committed ahead of the journal file's
`_journal_bulk` parts; `_bulk` parts of the main file) and the migrations (`schema`). Each
owner's part is a
subclass of it in its own module, holding that owner's SQL as named, typed methods:

- `facts.FactsStore`: the facts of a code, in one statement (shared by the gate and the desk);
- `gate.GateStore`: journal a decision, recent decisions (a FactsStore);
- `sync.SyncStore`: apply synced facts, cursors, the journal's upload and replies;
- `printjobs.PrintJobStore`: store, claim, mark and list print jobs;
- `desk.DeskStore`: the desk's operations queue and synced passes (a FactsStore);
- `pretix.PretixStore`: pretix's positions and their passages on the check-in list.

`database.Store` inherits every part; the daemon opens one `Store` and each owner types its
dependency with its own part (`PrintQueue(store: PrintJobStore)`), so mypy shows what each
owner may do. There is no raw query or transaction outside this package.
"""
