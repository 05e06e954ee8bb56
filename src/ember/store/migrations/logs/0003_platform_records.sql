-- Lines the platform wrote (START, END, REPORT, INIT_START, the timeout line, "[ember] …") are
-- marked as its own, so a function that prints "REPORT RequestId: …" is never mistaken for
-- them. CloudWatch's APIs still return plain messages; Ember's readers use the mark.
ALTER TABLE log_events ADD COLUMN platform INTEGER NOT NULL DEFAULT 0;
-- Events stored before this migration carry no mark: they are marked by their text, as every
-- reader took them until now (only new events are proof against imitation).
UPDATE log_events SET platform = 1
 WHERE substr(message, 1, 17) IN ('START RequestId: ', 'REPORT RequestId:')
    OR substr(message, 1, 15) = 'END RequestId: '
    OR substr(message, 1, 11) = 'INIT_START '
    OR substr(message, 1, 8) = '[ember] '
    OR (substr(message, 1, 9) = '{"time":"' AND instr(message, '","type":"platform.') = 34);
