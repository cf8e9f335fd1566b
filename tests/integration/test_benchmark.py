"""The README's model table is produced from real model folders and rewritten in place."""

import shutil

from skin_demo.bench.models import END, START, benchmark_rows, render_table, write_into_readme


def test_benchmark_table_lists_each_model_folder_and_replaces_itself_in_the_readme(tiny_model_dir, tmp_path):
    weights = tmp_path / "weights"
    shutil.copytree(tiny_model_dir, weights / "tiny")
    rows = benchmark_rows(weights)
    assert [r["name"] for r in rows] == ["tiny"]
    assert rows[0]["latency_ms"] > 0 and rows[0]["throughput"] > 0 and 0 <= rows[0]["balanced_accuracy"] <= 1
    table = render_table(rows)
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\n{START}\nold table\n{END}\n\nafter\n")
    write_into_readme(table, readme)
    write_into_readme(table, readme)
    text = readme.read_text()
    assert "old table" not in text and text.count(START) == 1 and "| tiny |" in text and text.endswith("after\n")
