"""What the pages share and what makes a page short: navigation and language, the resident chat
engines, charts, the export section of an adapter card. Pages describe screens; the logic they
need lives here and in the floors below."""
