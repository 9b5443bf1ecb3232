"""The dashboard's style sheet: one static <style> block (no URL, no import, no script), shown
once at the top of the page."""
from __future__ import annotations

__all__ = ["STYLE"]

STYLE = """<style>
.ao-dashboard { font-family: sans-serif; gap: 6px; }
.ao-nav { min-width: 230px; max-width: 240px; border-right: 1px solid #ddd; padding-right: 8px; }
.ao-nav .ao-client { font-weight: bold; margin: 6px 0 0 12px; color: #444; }
.ao-nav .ao-schedule-entry { margin-left: 24px; width: 170px; }
.ao-nav-indent { margin-left: 12px; }
.ao-main { flex: 1 1 auto; padding-left: 10px; }
.ao-dot { font-size: 20px; vertical-align: middle; }
.ao-st-not-created { color: #9e9e9e; } .ao-st-pending { color: #1e88e5; }
.ao-st-in-progress { color: #ffb300; } .ao-st-completed { color: #43a047; }
.ao-st-errored { color: #e53935; } .ao-st-stalled { color: #fb8c00; }
.ao-st-completed-errors { color: #9e9d24; }
.ao-late { background: #b71c1c; color: #fff; font-weight: bold; font-size: 11px; border-radius: 3px;
  padding: 0 5px; margin-left: 6px; vertical-align: middle; cursor: help; }
.ao-status { min-width: 150px; }
.ao-job-menu { padding: 0; font-weight: bold; }
.ao-header { align-items: center; flex-wrap: wrap; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.ao-config .ao-attrs { display: flex; flex-wrap: wrap; gap: 14px; color: #333; font-size: 12px; }
.ao-config .ao-attr-label { color: #777; } .ao-config .ao-config-note { color: #777; font-size: 11px; }
.ao-message { padding: 4px 8px; border-radius: 4px; align-items: center; }
.ao-message-error { background: #fdecea; border: 1px solid #e53935; }
.ao-message-info { background: #e8f4fd; border: 1px solid #1e88e5; }
.ao-confirm { background: #fff8e1; border: 1px solid #ffb300; padding: 4px 8px; align-items: center; }
.ao-tiles { flex-wrap: wrap; gap: 8px; }
.ao-job-tile { border: 1px solid #ccc; border-radius: 6px; padding: 6px; width: 250px; background: #fff; }
.ao-job-header { justify-content: space-between; }
.ao-job-counts { font-size: 12px; }
.ao-activity-body { position: relative; flex-direction: row; }
.ao-activity-body.ao-drawers-open { min-height: 600px; }
/* its own stacking context: nothing of the charts (plotly's mode bar) rises above the backdrop */
.ao-activity-main { flex: 1 1 100%; min-width: 0; position: relative; z-index: 0; }
/* the drawers lie over the activity pane's right side; the charts under them keep their size */
.ao-drawers { position: absolute; top: 0; right: 0; bottom: 0; width: 46%; min-width: 420px; z-index: 2;
  gap: 8px; overflow-y: auto; padding: 0 2px 0 6px; }
/* the rest of the activity pane, dimmed: a click on it closes one drawer level */
.ao-activity-body > .ao-backdrop { position: absolute; top: 0; left: 0; width: 100% !important;
  height: 100% !important; margin: 0; padding: 0; z-index: 1; border: none; border-radius: 0;
  background: rgba(255, 255, 255, 0.55); box-shadow: none !important; outline: none; cursor: default; }
.ao-drawer { border: 1px solid #bbb; border-left: 4px solid #546e7a; background: #fafafa; padding: 8px;
  box-shadow: -2px 2px 6px rgba(0,0,0,.15); }
.ao-drawer-footer { justify-content: flex-end; }
.ao-drawer { flex: 0 0 auto; }
.ao-bar { display: flex; height: 16px; width: 100%; max-width: 380px; border-radius: 3px; overflow: hidden;
  background: #eee; margin: 6px 0 4px; }
.ao-bar-part { height: 100%; }
.ao-bar-legend { display: flex; flex-wrap: wrap; gap: 12px; font-size: 12px; }
.ao-bar-swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; }
.ao-bar-done { color: #777; }
.ao-errors-info { border-radius: 50%; height: 26px; padding: 0; margin-left: 8px; font: italic bold 15px serif; }
.ao-error-row, .ao-item-row { border-top: 1px solid #e0e0e0; align-items: flex-start; }
.ao-item-row > .widget-html { margin: 0 3px; min-width: 0; overflow: hidden; }
.ao-item-row .widget-html-content { min-width: 0; width: 100%; overflow: hidden; white-space: normal; }
.ao-item-header .widget-html-content span { white-space: nowrap; }
.ao-error-header .widget-html-content, .ao-item-header .widget-html-content {
  font-weight: bold; gap: 6px; display: flex; width: 100%; }
.ao-error-header .widget-html-content span { width: 110px; }
.ao-error-count, .ao-error-code { min-width: 110px; }
.ao-item-row .ao-account-id { flex: 0 0 110px; } .ao-item-row .ao-batch-id { flex: 0 0 56px; }
.ao-item-row .ao-item-status { flex: 0 0 50px; }
.ao-item-row .ao-reason, .ao-item-row .ao-payload { flex: 1 1 0; }
.ao-item-header span:nth-child(1) { width: 110px; } .ao-item-header span:nth-child(2) { width: 56px; }
.ao-item-header span:nth-child(3), .ao-item-header span:nth-child(5) { flex: 1 1 0; }
.ao-item-header span:nth-child(4) { width: 50px; }
.ao-expand summary { cursor: pointer; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.ao-expand pre { white-space: pre-wrap; word-break: break-all; max-height: 260px; overflow: auto;
  background: #f4f4f4; padding: 4px; margin: 2px 0; font-size: 11px; line-height: 1.3; }
.ao-table { border-collapse: collapse; font-size: 12px; }
.ao-table td, .ao-table th { border: 1px solid #ddd; padding: 2px 6px; vertical-align: top; }
.ao-archived { color: #888; font-style: italic; }
.ao-archived-tag { background: #eee; border-radius: 3px; padding: 0 4px; }
.ao-role-bar { font-size: 12px; color: #555; text-align: right; }
.ao-role-viewer { background: #fff8e1; border: 1px solid #ffb300; border-radius: 4px; padding: 1px 6px; }
.ao-audit-refused td { background: #fdecea; }
.ao-audit-table td:nth-child(-n+5) { white-space: nowrap; }
.ao-preview { margin: 4px 0 0 0; padding-left: 18px; font-size: 12px; max-height: 200px; overflow-y: auto; }
.ao-error-header .widget-html-content span:nth-child(4) { width: 70px; }
.ao-item-row .ao-edit-item { flex: 0 0 100px; font-size: 11px; }
.ao-item-editor { border: 1px solid #9e9d24; background: #fffde7; padding: 6px; margin-top: 6px; }
.ao-editor-text textarea { font-family: monospace; font-size: 12px; }
.ao-editor-error { color: #b71c1c; }
.widget-html-content { line-height: 1.4; }
</style>"""
