# MovieLens-100k (943 users, 1,682 movies, 100,000 ratings; GroupLens). Not shipped with
# polyhead (GroupLens' terms forbid redistribution): `make data`, or `polyhead train` on
# demand, fetches it from the recbole wheel into ~/.cache/polyhead/ml-100k ($POLYHEAD_ML100K_DIR).
data = dict(source="ml-100k")
