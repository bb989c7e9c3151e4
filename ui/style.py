"""The page's CSS, on top of the Gradio theme's variables so dark mode keeps working."""

CSS = """
.gradio-container { max-width: 1200px !important; margin: 0 auto !important; }
.ui-header { padding: 18px 4px 6px; }
.ui-header-title { font-size: 1.9rem; font-weight: 700; letter-spacing: -0.02em;
  color: var(--body-text-color); }
.ui-header-title span { color: #4f46e5; }
.ui-header-sub { color: var(--body-text-color-subdued); margin-top: 2px; }
.ui-section { font-size: 1.15rem; font-weight: 600; margin: 10px 0 0; }
.ui-placeholder { border: 1px dashed var(--border-color-primary); border-radius: var(--radius-lg);
  padding: 28px 16px; text-align: center; color: var(--body-text-color-subdued); }
.ui-result { border: 1px solid var(--border-color-primary);
  border-left: 6px solid var(--accent, var(--color-accent));
  border-radius: var(--radius-lg); padding: 14px 18px; background: var(--block-background-fill); }
.ui-result-label { font-size: 2rem; font-weight: 700; color: var(--accent); line-height: 1.2; }
.ui-result-title { font-weight: 600; margin-bottom: 6px; overflow-wrap: anywhere; }
.ui-stats { display: flex; flex-wrap: wrap; gap: 10px 26px; margin-top: 8px; }
.ui-stat-label { font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.05em;
  color: var(--body-text-color-subdued); }
.ui-stat-value { font-size: 1.15rem; font-weight: 600; }
.ui-summary { display: flex; flex-wrap: wrap; gap: 8px 22px; align-items: center;
  padding: 10px 14px; border-radius: var(--radius-lg); background: var(--background-fill-secondary);
  color: var(--body-text-color); font-size: 0.95rem; }
.ui-alert { display: flex; gap: 10px; align-items: flex-start; padding: 10px 14px; margin: 6px 0;
  border-radius: var(--radius-lg); border: 1px solid; font-size: 0.95rem; }
.ui-alert-icon { flex: none; width: 1.3em; height: 1.3em; border-radius: 50%; color: white;
  display: inline-flex; align-items: center; justify-content: center; font-weight: 700;
  font-size: 0.85em; margin-top: 0.1em; }
.ui-alert-error .ui-alert-icon { background: #d93036; }
.ui-alert-warning .ui-alert-icon { background: #d28a00; }
.ui-alert-info .ui-alert-icon { background: #4f46e5; }
.ui-alert-success .ui-alert-icon { background: #2f9e63; }
.ui-alert-error { background: #fdecec; border-color: #f2b8b5; color: #8c1d18; }
.ui-alert-warning { background: #fff6e0; border-color: #f5d48a; color: #7a4b00; }
.ui-alert-info { background: #eef2ff; border-color: #c7d2fe; color: #312e81; }
.ui-alert-success { background: #e9f7ef; border-color: #a7dfbf; color: #14532d; }
.ui-badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 0.85rem;
  font-weight: 600; }
.ui-badge-good { background: #e9f7ef; color: #14532d; }
.ui-badge-bad { background: #fdecec; color: #8c1d18; }
.ui-badge-muted { background: var(--background-fill-secondary);
  color: var(--body-text-color-subdued); }
.ui-grid { display: grid; align-items: start; gap: 14px;
  grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); }
.ui-card { border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
  padding: 12px 16px; background: var(--block-background-fill); }
.ui-wide { grid-column: 1 / -1; }
.ui-drift-status { margin: 0 0 8px; }
.ui-card h3 { margin: 0 0 8px; font-size: 1rem; font-weight: 600; }
.ui-kv, .ui-tests { width: 100%; border-collapse: collapse; font-size: 0.92rem; }
.ui-kv, .ui-tests, .ui-kv tbody, .ui-tests tbody, .ui-tests thead { border: none !important; }
.ui-kv tr, .ui-tests tr, .ui-kv th, .ui-kv td, .ui-tests th, .ui-tests td {
  border: none !important; }
.ui-kv th { text-align: left; font-weight: 500; color: var(--body-text-color-subdued);
  padding: 4px 12px 4px 0; width: 45%; vertical-align: top; }
.ui-kv td { padding: 4px 0; overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
.ui-kv tr + tr th, .ui-kv tr + tr td {
  border-top: 1px solid var(--border-color-primary) !important; }
.ui-tests th, .ui-tests td { text-align: left; padding: 4px 8px;
  border-bottom: 1px solid var(--border-color-primary) !important; }
.ui-tests th { color: var(--body-text-color-subdued); font-weight: 500; }
.ui-footer { text-align: center; color: var(--body-text-color-subdued); font-size: 0.85rem;
  padding: 10px; }
.ui-muted { color: var(--body-text-color-subdued); font-size: 0.9rem; }
.ui-hint { padding: 0 4px; }
.ui-feedback-question { font-weight: 600; color: var(--body-text-color); padding: 6px 0; }
.ui-accuracy-hint { margin: 8px 0 0; }
.ui-footer a { color: var(--color-accent); }
.ui-explain { border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg);
  padding: 12px 16px; background: var(--block-background-fill); }
.ui-explain-head { font-weight: 600; margin-bottom: 8px; }
.ui-explain-text { font-size: 1.08rem; line-height: 2.1; margin: 0 0 10px;
  overflow-wrap: anywhere; }
.ui-word { color: var(--body-text-color); background-color: transparent; border-radius: 4px;
  padding: 2px 3px; cursor: help; }
.ui-word-for, .ui-word-against { font-weight: 500; }
.ui-word-against { text-decoration: underline dotted; text-underline-offset: 3px; }
.ui-explain-legend { display: flex; flex-wrap: wrap; gap: 4px 8px; align-items: center;
  font-size: 0.9rem; color: var(--body-text-color); }
.ui-legend-key { display: inline-flex; align-items: center; gap: 5px; }
.ui-swatch { display: inline-block; width: 1.1em; height: 1.1em; border-radius: 3px;
  border: 1px solid var(--border-color-primary); }
.ui-explain-top { margin: 8px 0 0; font-size: 0.92rem; overflow-wrap: anywhere; }
.ui-explain-note { margin: 6px 0 0; }
"""
