"""The theory notebook runs top to bottom (on the smoke preset, to fit the suite's budget)."""


import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")


def test_gaussian_notebook_executes(repo_root, tmp_path, monkeypatch):
  notebook = nbformat.read(repo_root / "notebooks" / "gaussian_toy.ipynb", as_version=4)
  monkeypatch.setenv("SELFCONSUME_NOTEBOOK_PRESET", "smoke")
  client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()
  outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                    for o in cell.get("outputs", []))
  assert "theorem factor" in outputs
  assert (tmp_path / "w2_notebook.png").stat().st_size > 0
  assert (tmp_path / "stability_notebook.png").stat().st_size > 0
  errors = [o for cell in notebook.cells if cell.cell_type == "code"
            for o in cell.get("outputs", []) if o.get("output_type") == "error"]
  assert not errors
