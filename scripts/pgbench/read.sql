-- The exact read the DAO makes (stored + pending).
\set u random(1, :users)
SELECT selfology.answers_of_user(:u);
