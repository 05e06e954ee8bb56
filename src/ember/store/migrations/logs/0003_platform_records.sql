-- Lines the platform wrote (START, END, REPORT, INIT_START, the timeout line, "[ember] …") are
-- marked as its own, so a function that prints "REPORT RequestId: …" is never mistaken for
-- them. CloudWatch's APIs still return plain messages; Ember's readers use the mark.
ALTER TABLE log_events ADD COLUMN platform INTEGER NOT NULL DEFAULT 0;
