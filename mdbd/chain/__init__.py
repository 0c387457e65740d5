"""The notebook chain (layer 6 of docs/layers.md): one module per notebook stage (stages/), the notebooks'
context (notebook), the papermill chain runner (reproduce), REPORT.md (report_md) and the nbval references."""
