"""The report: tables, seaborn figures, prose from templates, notebooks run by papermill and
exported by nbconvert (``pip install 'fanout[report]'``). Import the submodule you need:
``fanout.report.tables``, ``fanout.report.plots``, ``fanout.report.notebooks``, ``fanout.report.text``."""
