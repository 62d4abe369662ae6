-- When a key's credits were last refilled, or set (NULL: when the key was created). A verification refills
-- them to the refill's amount when a refill day has begun since.
ALTER TABLE keys ADD COLUMN last_refill_at BIGINT;
