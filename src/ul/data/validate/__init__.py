"""validate: Great Expectations suites over the manifest, the split counts and the decoded pixels
(ul.data.validate.gate is the stage's body; tables, suites, the GX runner and the Data Docs apart)."""
