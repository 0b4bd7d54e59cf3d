"""R24 weekly and monthly reports: figures aggregated in the database
(`figures`), rendered as markdown, a workbook and a chart (`render`)."""
