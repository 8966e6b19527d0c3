"""The `llmsim` CLI and the Streamlit dashboard. Nothing imports this package."""
